"""The bindings `roles.GRANTS` asks for, made concrete for one config and project.

Runtime accounts are each environment's `run.service_account`; an environment without
one runs as the Compute Engine default account, which setup leaves alone (it is noted:
name an account of its own). Secrets are named in the project the environment deploys
to (`Config.target`), so a staging project's secrets get their grants there.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from deployer.config import Config
from deployer.setup import roles
from deployer.setup.names import (
    FRONT_FUNCTION,
    FRONT_SECRETS,
    FRONT_SERVICE,
    WORKER_SECRETS,
    secret_name,
)

Bindings = dict[str, set[str]]  # role -> members


@dataclass
class Wanted:
    project_roles: Bindings = field(default_factory=lambda: defaultdict(set))
    # runtime account email -> role -> members (the deployer's serviceAccountUser)
    account_roles: dict[str, Bindings] = field(default_factory=dict)
    # projects/P/secrets/S -> members with secretAccessor
    secret_readers: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # projects/P/locations/R/services/S -> role -> members
    service_roles: dict[str, Bindings] = field(default_factory=dict)
    worker_job_roles: Bindings = field(default_factory=lambda: defaultdict(set))
    # environments that name no runtime account
    unnamed_runtime: list[str] = field(default_factory=list)


def _applies(grant: roles.Grant, config: Config, front: str, image_given: bool) -> bool:
    public = any(e.run.allow_unauthenticated for e in config.environments.values())
    connected = any(
        s.source.connected_repository or s.source.trigger for s in config.services.values()
    )
    return {
        roles.ALWAYS: True,
        roles.ANY_PUBLIC: public,
        roles.NONE_PUBLIC: not public,
        roles.CONNECTED: connected,
        roles.SETUP_BUILDS: not image_given or front == FRONT_FUNCTION,
    }[grant.when]


def runtime_accounts(config: Config) -> dict[str, list[str]]:
    """Each runtime account the config names -> the environments that run as it."""
    found: dict[str, list[str]] = defaultdict(list)
    for name, environment in sorted(config.environments.items()):
        if environment.run.service_account:
            found[environment.run.service_account].append(name)
    return dict(found)


def _referenced_secrets(config: Config) -> tuple[dict[str, set[str]], set[str]]:
    """Secrets the runtime accounts read (name -> account emails), and those the deployer reads."""
    runtime: dict[str, set[str]] = defaultdict(set)
    deployer: set[str] = set()
    for name, environment in config.environments.items():
        target = config.target(name)
        for ref in environment.secrets.values():
            if environment.run.service_account:
                runtime[secret_name(target.project, ref.secret)].add(
                    environment.run.service_account
                )
        if environment.env_from_secret is not None:
            deployer.add(secret_name(target.project, environment.env_from_secret.secret))
    if config.github is not None:
        token = config.github.token_secret
        for service in config.services.values():
            deployer.add(secret_name(token.project or service.project, token.secret))
    return runtime, deployer


def wanted(
    config: Config,
    project: str,
    region: str,
    front: str = FRONT_FUNCTION,
    image_given: bool = False,
) -> Wanted:
    """Every binding setup makes for `config` in `project`, the front deployed as `front`
    (`image_given`: `--image` names the deployer's image, so setup builds none)."""
    result = Wanted()
    for grant in roles.GRANTS:
        if not _applies(grant, config, front, image_given):
            continue
        if grant.on == roles.PROJECT:
            result.project_roles[grant.role].add(roles.member(grant.who, project))
        elif grant.on == roles.RUNTIME_ACCOUNT:
            for account in runtime_accounts(config):
                result.account_roles.setdefault(account, defaultdict(set))[grant.role].add(
                    roles.member(grant.who, project)
                )
        elif grant.on == roles.WORKER_JOB:
            result.worker_job_roles[grant.role].add(roles.member(grant.who, project))
        elif grant.on == roles.FRONT_SERVICE:
            service = f"projects/{project}/locations/{region}/services/{FRONT_SERVICE}"
            result.service_roles.setdefault(service, defaultdict(set))[grant.role].add(
                roles.member(grant.who, project)
            )
    runtime, deployer = _referenced_secrets(config)
    for secret, accounts in runtime.items():
        result.secret_readers[secret] |= {f"serviceAccount:{a}" for a in accounts}
    own = {roles.DEPLOYER: WORKER_SECRETS, roles.FRONT: FRONT_SECRETS}
    for key, secrets in own.items():
        for secret in secrets:
            result.secret_readers[secret_name(project, secret)].add(roles.member(key, project))
    for secret in deployer:
        result.secret_readers[secret].add(roles.member(roles.DEPLOYER, project))
    result.unnamed_runtime = sorted(
        name for name, e in config.environments.items() if not e.run.service_account
    )
    return result
