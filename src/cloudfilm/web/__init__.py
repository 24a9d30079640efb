"""Pages and assets (portal and viewers arrive in a later issue)."""
