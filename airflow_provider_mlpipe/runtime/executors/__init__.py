"""One module per stage; each defines ``execute(context) -> summary`` and optionally ``fingerprint(request)``."""
