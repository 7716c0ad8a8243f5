from django.urls import path

from apps.accounts import api

urlpatterns = [
    path("me/", api.MeApi.as_view(), name="me"),
    path("institutions/", api.InstitutionListApi.as_view(), name="institution-list"),
    path(
        "institutions/<slug:slug>/", api.InstitutionDetailApi.as_view(), name="institution-detail"
    ),
    path(
        "institutions/<slug:slug>/members/", api.MemberListApi.as_view(), name="institution-members"
    ),
    path(
        "institutions/<slug:slug>/members/<str:username>/",
        api.MemberDetailApi.as_view(),
        name="institution-member",
    ),
    path("tokens/", api.TokenListApi.as_view(), name="token-list"),
    path("tokens/<int:token_id>/", api.TokenDetailApi.as_view(), name="token-detail"),
]
