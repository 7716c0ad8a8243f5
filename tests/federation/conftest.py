from tests.catalog.conftest import catalog_rows  # noqa: F401 - shared fixtures
from tests.compute.conftest import (  # noqa: F401
    allocation,
    gpu_node,
    make_benchmark,
    make_model_version,
)
from tests.evaluations.conftest import cpu_benchmark, make_cpu_benchmark, post_result  # noqa: F401
