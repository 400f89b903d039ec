"""Settings package: base holds everything; local, test and production only override."""
