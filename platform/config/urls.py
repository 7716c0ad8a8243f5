from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.core.exceptions import api_not_found
from apps.core.views import health

api_v1 = [
    path("", include("apps.accounts.api_urls")),
    path("", include("apps.catalog.api_urls")),
    path("", include("apps.compute.api_urls")),
    path("", include("apps.evaluations.api_urls")),
    path("", include("apps.events.api_urls")),
    path("", include("apps.events.webhook_api_urls")),
    path("", include("apps.federation.api_urls")),
]

urlpatterns = [
    path("", include("apps.portal.urls")),
    path("", include("apps.accounts.urls")),
    path("", include("apps.catalog.urls")),
    path("", include("apps.compute.urls")),
    path("", include("apps.evaluations.urls")),
    path("", include("apps.events.urls")),
    path("", include("apps.events.webhook_urls")),
    path("", include("apps.federation.urls")),
    path("", include("apps.federation.protocol_urls")),
    path("", include("apps.federation.ping_urls")),
    path("", include("apps.federation.oai_urls")),
    path("login/", auth_views.LoginView.as_view(template_name="accounts/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "account/password/",
        auth_views.PasswordChangeView.as_view(template_name="accounts/password_change_form.html"),
        name="password_change",
    ),
    path(
        "account/password/done/",
        auth_views.PasswordChangeDoneView.as_view(
            template_name="accounts/password_change_done.html"
        ),
        name="password_change_done",
    ),
    path("admin/", admin.site.urls),
    path("healthz", health, name="health"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # Published models for the Hugging Face clients: after every page, before the catch-all.
    path("", include("apps.catalog.hub_urls")),
    # Anything else under /api/ answers in the API's error format, not with an HTML page.
    re_path(r"^api/", api_not_found),
]

# Errors raised outside a DRF view (a body over the upload limit, a crash) still answer in the
# API's error format under /api/.
handler400 = "apps.core.exceptions.bad_request"
handler403 = "apps.core.exceptions.permission_denied"
handler500 = "apps.core.exceptions.server_error"
