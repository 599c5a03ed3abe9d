"""Storage: atomic publish of directories, object store and catalog."""
