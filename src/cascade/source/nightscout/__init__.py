"""Reading Nightscout: its collections, and an HTTP client for API v1 and v3."""
