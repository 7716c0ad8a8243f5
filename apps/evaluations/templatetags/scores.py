from django import template

register = template.Library()


@register.filter
def score(value: object) -> str:
    """A metric value with at most four significant digits, without trailing zeros."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    return f"{value:.4g}"
