"""Helpers shared by the test suite: a real server process, tokens, media checks."""
