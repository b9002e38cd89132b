"""`python -m cnnctl` (also what torchrun launches with `-m cnnctl`)."""

from cnnctl.cli import main

if __name__ == "__main__":
    main()
