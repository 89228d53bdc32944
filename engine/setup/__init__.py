"""Setup's shared steps (setup.sh, setup.bat): standard library only, they run before .venv has packages."""
