"""REST endpoints for the signed-in user, institutions, memberships and API tokens.

Views stay thin: an input serializer validates, one service writes, an output serializer renders.
"""

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from django_countries.serializer_fields import CountryField
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, permissions, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import selectors, services
from apps.accounts.fields import OrcidField, RorIdField
from apps.accounts.models import ApiToken, Institution, Membership, User
from apps.accounts.permissions import IsStaffOrReadOnly, SessionOnly
from apps.accounts.typing import AuthenticatedRequest
from apps.core.filters import FilterSet
from apps.core.serializers import BoundedDateTimeField, StrictSerializer


class MembershipOfUserOutput(serializers.Serializer):
    institution = serializers.SlugField(source="institution.slug")
    institution_name = serializers.CharField(source="institution.name")
    role = serializers.CharField()


class MeOutput(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.EmailField(allow_blank=True)
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    display_name = serializers.CharField()
    orcid = serializers.CharField()
    is_staff = serializers.BooleanField()
    memberships = MembershipOfUserOutput(many=True)


class MeInput(StrictSerializer):
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    orcid = OrcidField(required=False, allow_blank=True)


class MeApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=MeOutput, summary="The signed-in user and their memberships")
    def get(self, request: AuthenticatedRequest) -> Response:
        user = selectors.user_with_memberships(user=request.user)
        return Response(MeOutput(user).data)

    @extend_schema(request=MeInput, responses=MeOutput, summary="Update your profile")
    def patch(self, request: AuthenticatedRequest) -> Response:
        payload = MeInput(data=request.data)
        payload.is_valid(raise_exception=True)
        services.user_profile_update(user=request.user, **payload.validated_data)
        user = selectors.user_with_memberships(user=request.user)
        return Response(MeOutput(user).data)


class InstitutionOutput(serializers.ModelSerializer):
    country_name = serializers.CharField(source="country.name", read_only=True)
    member_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Institution
        fields = [
            "slug",
            "name",
            "country",
            "country_name",
            "website",
            "ror_id",
            "description",
            "member_count",
            "created_at",
            "updated_at",
        ]


class InstitutionCreateInput(StrictSerializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80)
    country = CountryField(help_text="ISO 3166-1 alpha-2 code, e.g. DE.")
    website = serializers.URLField(required=False, allow_blank=True)
    ror_id = RorIdField(required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)


class InstitutionUpdateInput(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    country = CountryField(required=False)
    website = serializers.URLField(required=False, allow_blank=True)
    ror_id = RorIdField(required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)


class InstitutionFilter(FilterSet):
    search = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Institution
        fields = ["country"]


@extend_schema_view(get=extend_schema(summary="List institutions"))
class InstitutionListApi(generics.ListAPIView):
    permission_classes = [IsStaffOrReadOnly]
    serializer_class = InstitutionOutput
    filterset_class = InstitutionFilter
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]

    def get_queryset(self):
        return selectors.institution_list()

    @extend_schema(
        request=InstitutionCreateInput,
        responses={201: InstitutionOutput},
        summary="Create an institution (platform staff)",
    )
    def post(self, request: Request) -> Response:
        payload = InstitutionCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        institution = services.institution_create(**payload.validated_data)
        institution = selectors.institution_list().get(pk=institution.pk)
        return Response(InstitutionOutput(institution).data, status=status.HTTP_201_CREATED)


def _institution_or_404(slug: str) -> Institution:
    return get_object_or_404(selectors.institution_list(), slug=slug)


def _require_manager(request: Request, institution: Institution) -> None:
    if not selectors.user_can_manage_institution(user=request.user, institution=institution):
        raise PermissionDenied(f"Only admins of {institution.name} and platform staff can do this.")


class InstitutionDetailApi(APIView):
    @extend_schema(responses=InstitutionOutput, summary="An institution")
    def get(self, request: Request, slug: str) -> Response:
        return Response(InstitutionOutput(_institution_or_404(slug)).data)

    @extend_schema(
        request=InstitutionUpdateInput,
        responses=InstitutionOutput,
        summary="Update an institution (its admins, platform staff)",
    )
    def patch(self, request: Request, slug: str) -> Response:
        institution = _institution_or_404(slug)
        _require_manager(request, institution)
        payload = InstitutionUpdateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        services.institution_update(institution=institution, **payload.validated_data)
        return Response(InstitutionOutput(_institution_or_404(slug)).data)


class MemberOutput(serializers.Serializer):
    username = serializers.CharField(source="user.username")
    display_name = serializers.CharField(source="user.display_name")
    orcid = serializers.CharField(source="user.orcid")
    role = serializers.CharField()
    joined_at = serializers.DateTimeField(source="created_at")


class MemberAddInput(StrictSerializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.MEMBER)

    def validate_username(self, value: str) -> User:
        try:
            return selectors.active_user_by_username(username=value)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from error


class MemberRoleInput(StrictSerializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)


@extend_schema_view(get=extend_schema(summary="List an institution's members"))
class MemberListApi(generics.ListAPIView):
    serializer_class = MemberOutput
    filter_backends: list = []

    def get_queryset(self):
        institution = get_object_or_404(Institution, slug=self.kwargs["slug"])
        return selectors.membership_list(institution=institution)

    @extend_schema(
        request=MemberAddInput,
        responses={201: MemberOutput},
        summary="Add a member (institution admins, platform staff)",
    )
    def post(self, request: Request, slug: str) -> Response:
        institution = get_object_or_404(Institution, slug=slug)
        _require_manager(request, institution)
        payload = MemberAddInput(data=request.data)
        payload.is_valid(raise_exception=True)
        membership = services.membership_add(
            institution=institution,
            user=payload.validated_data["username"],
            role=payload.validated_data["role"],
        )
        return Response(MemberOutput(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(APIView):
    def _membership(self, slug: str, username: str) -> Membership:
        institution = get_object_or_404(Institution, slug=slug)
        return get_object_or_404(
            selectors.membership_list(institution=institution), user__username=username
        )

    @extend_schema(responses=MemberOutput, summary="A member of an institution")
    def get(self, request: Request, slug: str, username: str) -> Response:
        return Response(MemberOutput(self._membership(slug, username)).data)

    @extend_schema(
        request=MemberRoleInput,
        responses=MemberOutput,
        summary="Change a member's role (institution admins, platform staff)",
    )
    def patch(self, request: Request, slug: str, username: str) -> Response:
        membership = self._membership(slug, username)
        _require_manager(request, membership.institution)
        payload = MemberRoleInput(data=request.data)
        payload.is_valid(raise_exception=True)
        membership = services.membership_change_role(
            membership=membership, role=payload.validated_data["role"]
        )
        return Response(MemberOutput(membership).data)

    @extend_schema(responses={204: None}, summary="Remove a member (institution admins, staff)")
    def delete(self, request: Request, slug: str, username: str) -> Response:
        membership = self._membership(slug, username)
        _require_manager(request, membership.institution)
        services.membership_remove(membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenOutput(serializers.ModelSerializer):
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "scope",
            "is_active",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "created_at",
        ]


class TokenCreatedOutput(TokenOutput):
    secret = serializers.SerializerMethodField(
        help_text="The token itself. Shown only in this response: store it now."
    )

    class Meta(TokenOutput.Meta):
        fields = [*TokenOutput.Meta.fields, "secret"]

    def get_secret(self, obj: ApiToken) -> str:
        return self.context["secret"]


class TokenCreateInput(StrictSerializer):
    name = serializers.CharField(max_length=100)
    scope = serializers.ChoiceField(choices=ApiToken.Scope.choices, default=ApiToken.Scope.READ)
    expires_at = BoundedDateTimeField(required=False, allow_null=True)


@extend_schema_view(get=extend_schema(summary="List your API tokens"))
class TokenListApi(generics.ListAPIView):
    permission_classes = [permissions.IsAuthenticated, SessionOnly]
    serializer_class = TokenOutput
    filter_backends: list = []

    def get_queryset(self):
        return selectors.api_token_list(user=self.request.user)  # type: ignore[arg-type]

    @extend_schema(
        request=TokenCreateInput,
        responses={201: TokenCreatedOutput},
        summary="Create a personal API token (signed-in session only)",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = TokenCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        token, secret = services.api_token_create(user=request.user, **payload.validated_data)
        body = TokenCreatedOutput(token, context={"secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED)


class TokenDetailApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    def _token(self, request: AuthenticatedRequest, token_id: int) -> ApiToken:
        return get_object_or_404(selectors.api_token_list(user=request.user), pk=token_id)

    @extend_schema(responses=TokenOutput, summary="One of your API tokens")
    def get(self, request: AuthenticatedRequest, token_id: int) -> Response:
        return Response(TokenOutput(self._token(request, token_id)).data)

    @extend_schema(request=None, responses={204: None}, summary="Revoke one of your API tokens")
    def delete(self, request: AuthenticatedRequest, token_id: int) -> Response:
        services.api_token_revoke(token=self._token(request, token_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
