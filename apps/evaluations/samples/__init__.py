"""Sample models and data for the demo and the tests, built or read without any download."""
