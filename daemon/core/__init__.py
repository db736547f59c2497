"""The core: the engine and what every layer shares (errors, models, naming, audit).

Nothing here imports the API, the CLI, garbage collection or git. Heavy libraries are
imported inside the functions that need them (the checkout hook's budget).
"""
