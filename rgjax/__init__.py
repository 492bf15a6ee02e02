"""rgjax."""
