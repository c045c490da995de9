"""Running the real `manage.py` commands as subprocesses, as supervisor does: for the tests and bench/."""
