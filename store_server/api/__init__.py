"""The store server's JSON API, one router per resource."""
