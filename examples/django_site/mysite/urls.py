from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("api/info/", views.info, name="info"),
    path("contact/", views.contact, name="contact"),
    path("api/form/", views.api_form, name="api-form"),
    path("upload/sha256/", views.upload_sha256, name="upload-sha256"),
    path("download/<str:name>", views.download, name="download"),
    path("stream/", views.stream, name="stream"),
    path("counter/", views.counter, name="counter"),
    path("boom/", views.boom, name="boom"),
    path("guestbook/", views.guestbook, name="guestbook"),
    path("upload/", views.upload, name="upload"),
    path("api/db/", views.db_info, name="db-info"),
    path("admin/", admin.site.urls),
]
