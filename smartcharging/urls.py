"""Dashboard URLs of load management (namespace ``smartcharging``)."""

from django.urls import path

from . import views

app_name = "smartcharging"

urlpatterns = [
    path("sites/<int:pk>/load/", views.site_load, name="site_load"),
    path("sites/<int:pk>/load/<str:form>", views.site_load_change, name="site_load_change"),
    path(
        "sites/<int:pk>/load/<str:kind>/<int:item>/delete",
        views.site_load_delete,
        name="site_load_delete",
    ),
]
