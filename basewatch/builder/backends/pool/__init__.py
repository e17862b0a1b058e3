"""A pool of build engines behind one Backend."""
