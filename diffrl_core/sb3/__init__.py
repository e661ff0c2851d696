"""stable-baselines3 policies and training loops whose actor is composed from named components."""
