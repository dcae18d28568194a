"""Alert notification: the durable webhook worker and the live-stream (SSE) broadcaster."""

from gateway.notify.alerts import ALERTS_CHANNEL, AlertEvent, AlertView
from gateway.notify.stream import AlertBroadcaster, AlertCallback, Subscription
from gateway.notify.webhook import WebhookOptions, WebhookPayload, WebhookWorker, sign, verify

__all__ = [
    "ALERTS_CHANNEL",
    "AlertBroadcaster",
    "AlertCallback",
    "AlertEvent",
    "AlertView",
    "Subscription",
    "WebhookOptions",
    "WebhookPayload",
    "WebhookWorker",
    "sign",
    "verify",
]
