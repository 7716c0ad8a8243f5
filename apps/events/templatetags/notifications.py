from django import template

from apps.events import selectors

register = template.Library()


@register.inclusion_tag("events/_watch_button.html", takes_context=True)
def benchmark_watch_button(context: template.Context, benchmark) -> dict:
    """Watch or Unwatch for a signed-in viewer of the benchmark's page."""
    user = context["user"]
    watching = user.is_authenticated and selectors.benchmark_watched(user=user, benchmark=benchmark)
    return {
        "benchmark": benchmark,
        "signed_in": user.is_authenticated,
        "watching": watching,
        "csrf_token": context.get("csrf_token"),
    }
