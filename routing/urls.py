"""Dashboard URLs of routing (namespace ``routing``)."""

from django.urls import path

from . import views

app_name = "routing"

urlpatterns = [
    path("", views.routing_overview, name="overview"),
    path("policy/review", views.policy_review, name="policy_review"),
    path("policy/apply", views.policy_apply_view, name="policy_apply"),
]
