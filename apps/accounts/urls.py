from django.urls import path

from apps.accounts import views

app_name = "accounts"

urlpatterns = [
    path("institutions/", views.institution_list, name="institution-list"),
    path("institutions/<slug:slug>/", views.institution_detail, name="institution-detail"),
    path("account/profile/", views.profile, name="profile"),
    path("account/tokens/", views.tokens, name="tokens"),
    path("account/tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
]
