"""Signed vendor callbacks (``kind = "webhook"`` routes): vendor -> gateway -> ``forward_to``.

One module per signature scheme, each a pure verifier over bytes (``twilio``, ``vonage``,
``vonage_jwt``, ``plivo``, ``sinch``, ``messagebird``, ``messente``, ``generic``); the registry
by scheme name in ``schemes.py``; reading a callback's message id, status, numbers and text in
``events.py``; config checks in ``config.py``; the stages and the forwarding session in
``stage.py``. This package imports nothing from ``gateway.config`` at import time, so the config
schema can use its options model.
"""
