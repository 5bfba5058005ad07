"""The deploy pipeline: stages, their events, and the records they leave."""
