"""Email: composing and sending messages."""
