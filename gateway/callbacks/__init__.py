"""Signed vendor callbacks (``kind = "webhook"`` routes): vendor -> gateway -> ``forward_to``.

The framework names no vendor: each vendor package (``gateway/vendors/<name>/callback.py``) holds
its pure verifier over bytes and declares its scheme (``scheme.py``); the registry by scheme name
is handed in (the server passes ``gateway.vendors.SCHEMES``). Reading a callback's message id,
status, numbers and text in ``events.py``; config checks in ``config.py``; the stages in
``stages.py`` and ``stage.py``, the forwarding session in ``forward.py``. The route options it
reads (``[route.webhook]``) are the config layer's model, ``gateway/config/webhook_options.py``.
"""
