"""Where the API lives."""
API = "/api/v1"
