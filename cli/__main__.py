"""`python -m cli`: the same entry point as the `trajcache` console script."""

from .main import main

main()
