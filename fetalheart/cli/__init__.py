"""Console entry points: argument parsing, then one call into the library."""
