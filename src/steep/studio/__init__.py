"""steep studio: a web app over the Model Hub -- datasets, new runs, live runs, models.

``steep studio`` serves it (see ``steep.cli.studio``); ``create_app`` builds it for tests.
"""
