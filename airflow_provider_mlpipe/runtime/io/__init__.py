"""Where data lives: artifact storage, credentials, input spans and the Examples layouts."""
