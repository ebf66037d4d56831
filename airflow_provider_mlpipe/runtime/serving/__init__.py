"""Versioned pushes and rollback of serving directories."""
