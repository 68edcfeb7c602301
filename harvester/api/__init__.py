"""The SENSIT Connect client: session and sign-in, replies into models or errors, proxy and TLS,
pure wire decoding."""
