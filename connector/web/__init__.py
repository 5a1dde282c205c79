"""HTTP layer: handlers parse, call the service, and render; no SQL or signing details here."""
