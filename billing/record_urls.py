"""Dashboard URLs of billing records (namespace ``billing``), under ``/billing/``."""

from django.urls import path, re_path

from . import record_views

app_name = "billing"

urlpatterns = [
    path("cdrs/", record_views.cdr_list, name="cdr_list"),
    path("cdrs/<int:pk>/", record_views.cdr_detail, name="cdr_detail"),
    path("invoices/", record_views.invoice_list, name="invoice_list"),
    re_path(
        r"^invoices/(?P<pk>[0-9]+)/(?P<kind>pdf|csv)$",
        record_views.invoice_file,
        name="invoice_file",
    ),
    path("statements/", record_views.statement_list, name="statement_list"),
    re_path(
        r"^statements/(?P<pk>[0-9]+)/(?P<kind>pdf|csv)$",
        record_views.statement_file,
        name="statement_file",
    ),
    path("disputes/", record_views.dispute_list, name="dispute_list"),
    path("disputes/<int:pk>/", record_views.dispute_detail, name="dispute_detail"),
]
