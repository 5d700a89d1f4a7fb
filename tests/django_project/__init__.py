"""A sample Django project served by achannels; its tests run in subprocesses."""
