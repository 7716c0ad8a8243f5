from django import template

register = template.Library()


@register.filter
def score(value: object) -> str:
    """A metric value with at most four significant digits, without trailing zeros."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    return f"{value:.4g}"


@register.filter
def difference(value: object) -> str:
    """A difference between two metric values, signed, with at most four significant digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    return f"{value:+.4g}"
