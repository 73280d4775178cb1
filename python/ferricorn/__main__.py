"""`python -m ferricorn`: same as the `ferricorn` console script."""

from ferricorn.main import main

main()
