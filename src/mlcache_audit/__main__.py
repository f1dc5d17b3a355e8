"""`python -m mlcache_audit` runs the same command as `mlcache`."""

from mlcache_audit.cli import main

if __name__ == "__main__":
    main()
