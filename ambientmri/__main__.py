"""``python -m ambientmri`` runs the command-line interface."""

from ambientmri.cli import main

if __name__ == "__main__":
    main()
