"""How the real services start and how every component reaches them."""
