from django.contrib.auth import views as auth_views
from django.urls import path

from webapp.accounts.views import api_token_page

app_name = "accounts"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("token/", api_token_page, name="api-token"),
]
