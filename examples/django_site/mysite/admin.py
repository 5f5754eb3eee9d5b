from django.contrib import admin

from .models import Entry, Upload


@admin.register(Entry)
class EntryAdmin(admin.ModelAdmin):
    list_display = ["name", "message", "created"]


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ["name", "size", "sha256", "created"]
