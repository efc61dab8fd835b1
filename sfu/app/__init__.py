"""The wiring above the packages: app state keys, resources, and create_app."""
