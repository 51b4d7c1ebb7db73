"""Offline checks of the GitHub workflows."""
