"""basewatch: rebuild every image built on a base image when that base is patched."""

__version__ = "0.1.0"
