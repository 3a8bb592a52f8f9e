"""Test infrastructure shared by every layer."""
