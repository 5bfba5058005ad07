"""README's table of what `deployer setup` grants is `deployer/setup/roles.py`'s list,
row for row, so neither can drift from the other."""

from __future__ import annotations

from pathlib import Path

from deployer.setup import roles


def readme_table(readme: str) -> list[tuple[str, ...]]:
    section = readme.split("- **What `deployer setup` grants**", 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = tuple(cell.strip() for cell in line.strip("|").split("|"))
        if cells[0] in ("role", "---"):
            continue
        rows.append((cells[0].strip("`"), *cells[1:]))
    return rows


def test_the_readme_lists_exactly_the_roles_setup_grants(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()

    assert readme_table(readme) == roles.readme_rows()


def test_every_project_role_the_readme_names_for_the_deployer_is_granted(repo_root: Path) -> None:
    """The "Rights" paragraph's roles (its prose) are all in the table, and nothing broad is."""
    readme = (repo_root / "README.md").read_text()
    rights = readme.split("- **Rights**", 1)[1].split("\n- **", 1)[0]
    granted = {grant.role for grant in roles.GRANTS}
    named = {word.strip("`,.();") for word in rights.split() if word.startswith("`roles/")}

    assert named <= granted, named - granted
    assert not granted & {"roles/editor", "roles/owner", "roles/iam.serviceAccountAdmin"}
