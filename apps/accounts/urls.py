from django.urls import path

from apps.accounts import views

app_name = "accounts"

urlpatterns = [
    path("institutions/", views.institution_list, name="institution-list"),
    path("institutions/<slug:slug>/", views.institution_detail, name="institution-detail"),
    path("institutions/<slug:slug>/manage/", views.institution_manage, name="institution-manage"),
    path("institutions/<slug:slug>/members/add/", views.member_add, name="member-add"),
    path(
        "institutions/<slug:slug>/members/<str:username>/role/",
        views.member_change_role,
        name="member-role",
    ),
    path(
        "institutions/<slug:slug>/members/<str:username>/remove/",
        views.member_remove,
        name="member-remove",
    ),
    path("account/profile/", views.profile, name="profile"),
    path("account/tokens/", views.tokens, name="tokens"),
    path("account/tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
]
