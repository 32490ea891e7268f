"""Dashboard URLs of tariffs (namespace ``tariffs``)."""

from django.urls import path

from . import tariff_views

app_name = "tariffs"

urlpatterns = [
    path("", tariff_views.tariff_list, name="list"),
    path("new/", tariff_views.tariff_create, name="create"),
    path("example", tariff_views.tariff_example, name="example"),
    path("<int:pk>/", tariff_views.tariff_detail, name="detail"),
    path("<int:pk>/edit/", tariff_views.tariff_edit, name="edit"),
    path("<int:pk>/publish", tariff_views.tariff_publish, name="publish"),
    path("<int:pk>/assign", tariff_views.tariff_assign, name="assign"),
    path("<int:pk>/simulate/", tariff_views.tariff_simulator, name="simulate"),
    path("assignments/<int:pk>/end", tariff_views.assignment_end, name="assignment_end"),
]
