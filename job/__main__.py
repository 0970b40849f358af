"""``python -m job`` is the same as the ``rotation`` command."""

from job.cli import main

if __name__ == "__main__":
    main()
