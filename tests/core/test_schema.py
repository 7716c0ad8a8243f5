import io

import pytest
import yaml
from django.core.management import call_command


@pytest.mark.django_db
def test_openapi_schema_is_valid_and_generates_without_warnings():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = yaml.safe_load(out.getvalue())
    assert schema["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"
    operations = [
        operation
        for path in schema["paths"].values()
        for method, operation in path.items()
        if method in {"get", "post", "patch", "put", "delete"}
    ]
    assert all(operation.get("summary") for operation in operations), (
        "every operation says what it does"
    )
